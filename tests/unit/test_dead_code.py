"""No dead code in src/: vulture finds none (the names only frameworks call are listed below)."""

from __future__ import annotations

from vulture import Vulture

from tests.helpers.harness import REPO

#: called by pydantic, typer, HTMLParser, dataclass consumers, or read by scripts/ and tests/
USED_ELSEWHERE = [
    "model_config",
    "apiVersion",
    "handle_starttag",
    "handle_endtag",
    "log_message",  # http.server.BaseHTTPRequestHandler calls it
    "mtime",  # tarfile.TarInfo's, set for reproducible image layers
    "pax_headers",  # tarfile.TarInfo's: a file capability in an image layer
    "host_link",  # a real node's status field, printed by `kfboot sandbox status`
    "rota",
    "schema",
    # fields of -o json documents (kfboot.documents) that only the serializer reads
    "written",
    "copied",
    "zapped_lvm_osds",
    "pool_size",
    "from_",
    "sandbox_login",
]


def test_vulture_finds_no_dead_code() -> None:
    v = Vulture(ignore_names=USED_ELSEWHERE, ignore_decorators=["@field_validator", "@*.command"])
    v.scavenge([str(REPO / "src"), str(REPO / "scripts" / "build-sandbox-binaries"), str(REPO / "tests")])
    found = [
        f"{item.filename.relative_to(REPO)}:{item.first_lineno}: {item.message}"
        for item in v.get_unused_code(min_confidence=60)
        if REPO / "src" in item.filename.parents
    ]
    assert found == []
