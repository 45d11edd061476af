"""A small Dockerfile reader for the tests: instructions, stages, and hadolint-like rules."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # the rest, continuation lines joined
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, or ``None`` for the shell form."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = re.sub(r"^(--\S+\s+)*CMD\s+", "", text)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """The ``ENV key=value ...`` settings of this stage (later ones win)."""
        out: dict[str, str] = {}
        for ins in self.all("ENV"):
            for item in shlex.split(ins.args):
                key, sep, value = item.partition("=")
                assert sep, f"line {ins.line}: ENV without '=' (the legacy form): {ins.args}"
                out[key] = value
        return out

    def arg_defaults(self) -> dict[str, str]:
        out = {}
        for ins in self.all("ARG"):
            key, _, value = ins.args.partition("=")
            out[key.strip()] = value.strip().strip('"')
        return out


def parse(path: Path) -> list[Stage]:
    """The stages of the Dockerfile at ``path``, in order."""
    logical: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        logical.append((start, " ".join(p for p in pending if p)))
        pending = []
    assert not pending, "the last instruction ends with a line continuation"
    stages: list[Stage] = []
    for number, text in logical:
        keyword, _, args = text.partition(" ")
        ins = Instruction(keyword.upper(), args.strip(), number)
        if ins.keyword == "FROM":
            parts = ins.args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        else:
            assert stages, f"line {number}: {keyword} before the first FROM"
        stages[-1].instructions.append(ins)
    return stages


def problems(stages: list[Stage]) -> list[str]:
    """What hadolint-like rules find wrong (empty: nothing)."""
    found: list[str] = []
    names = {s.name for s in stages if s.name}
    if len(stages) < 2:
        found.append("not a multi-stage build")
    for stage in stages:
        image = stage.image
        if image in names:
            continue
        repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        if "@sha256:" not in image and (not tag or tag == "latest"):
            found.append(f"FROM {image}: pin the base image by tag (not latest)")
        for ins in stage.instructions:
            if ins.keyword == "ADD" and re.search(r"https?://", ins.args):
                found.append(f"line {ins.line}: ADD of a URL (download in a RUN, checked)")
            if ins.keyword == "RUN":
                found += _run_problems(ins)
    final = stages[-1]
    users = final.all("USER")
    starts = [i for i in final.instructions if i.keyword in ("CMD", "ENTRYPOINT")]
    if not users or users[-1].args.split(":")[0] in ("root", "0"):
        found.append("the final stage runs as root: add USER <non-root>")
    elif starts and users[-1].line > min(i.line for i in starts):
        found.append("USER comes after CMD/ENTRYPOINT")
    for ins in starts:
        if ins.exec_form() is None:
            found.append(f"line {ins.line}: {ins.keyword} in shell form (signals miss the server)")
    checks = final.all("HEALTHCHECK")
    if not checks:
        found.append("no HEALTHCHECK")
    for ins in checks:
        if ins.exec_form() is None:
            found.append(f"line {ins.line}: HEALTHCHECK CMD in shell form")
    return found


def _run_problems(ins: Instruction) -> list[str]:
    found = []
    text = ins.args
    if re.search(r"\bapt-get\s+install\b", text):
        if "apt-get update" not in text:
            found.append(f"line {ins.line}: apt-get install without apt-get update in one RUN")
        if "--no-install-recommends" not in text:
            found.append(f"line {ins.line}: apt-get install without --no-install-recommends")
        if "rm -rf /var/lib/apt/lists/*" not in text:
            found.append(f"line {ins.line}: apt lists not removed in the same RUN")
    if re.search(r"\bapt\s+install\b", text):
        found.append(f"line {ins.line}: use apt-get, not apt, in scripts")
    for command in re.split(r"&&|;|\|\|", text):
        if re.search(r"\bpip3?\s+install\b", command) and "--no-cache-dir" not in command:
            found.append(f"line {ins.line}: pip install without --no-cache-dir")
    if re.search(r"\b(curl|wget)\b.*\|\s*(ba)?sh\b", text):
        found.append(f"line {ins.line}: piping a download into a shell")
    return found
