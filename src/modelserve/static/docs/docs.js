// Start Swagger UI on this server's OpenAPI document (an external file: the page's CSP
// allows no inline script).
(function () {
  "use strict";

  var root = document.getElementById("swagger-ui");
  var specUrl = root.getAttribute("data-spec-url");
  var ui = null;

  // The credential entered under Authorize, as the request header it travels in. The
  // server refuses a request with both headers, so an API key wins over a bearer token.
  function credentialHeaders() {
    var headers = {};
    if (ui === null) {
      return headers;
    }
    var authorized = ui.authSelectors.authorized();
    var key = authorized.getIn(["ApiKeyAuth", "value"]);
    var bearer = authorized.getIn(["BearerAuth", "value"]);
    if (key) {
      headers["X-API-Key"] = key;
    } else if (bearer) {
      headers["Authorization"] = "Bearer " + bearer;
    }
    return headers;
  }

  // After Authorize or Logout, fetch the document again: a credential with the predict
  // scope sees each model's own paths and input schemas; an anonymous caller, the routes.
  function reloadAfter(original) {
    return function (payload) {
      var result = original(payload);
      window.setTimeout(function () {
        ui.specActions.download(specUrl);
      }, 0);
      return result;
    };
  }

  ui = SwaggerUIBundle({
    url: specUrl,
    domNode: root,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    // No call to the online validator (another origin), no document from a ?url= query.
    validatorUrl: null,
    queryConfigEnabled: false,
    requestInterceptor: function (request) {
      if (request.loadSpec) {
        var headers = credentialHeaders();
        Object.keys(headers).forEach(function (name) {
          request.headers[name] = headers[name];
        });
      }
      return request;
    },
    plugins: [
      function () {
        return {
          statePlugins: {
            auth: {
              wrapActions: {
                authorize: reloadAfter,
                logout: reloadAfter,
              },
            },
          },
        };
      },
    ],
  });
})();
