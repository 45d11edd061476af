-- POST the file named by BODY_FILE (GET without a body when BODY_FILE is empty), with the
-- headers in BODY_HEADERS ("Name: value" per line; JSON's content type when it is unset), and
-- print a machine-readable summary at the end.
local body_file = os.getenv("BODY_FILE")
if body_file ~= nil and body_file ~= "" then
  wrk.method = "POST"
  local body_headers = os.getenv("BODY_HEADERS")
  if body_headers == nil or body_headers == "" then
    body_headers = "Content-Type: application/json"
  end
  for line in body_headers:gmatch("[^\n]+") do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
else
  wrk.method = "GET"
end
-- One extra request header, "Name: value" (an API key, say), when EXTRA_HEADER is set.
local extra = os.getenv("EXTRA_HEADER")
if extra ~= nil and extra ~= "" then
  local name, value = extra:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "p999_us": %d, ' ..
    '"non2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), e.status, e.connect + e.read + e.write + e.timeout))
end
