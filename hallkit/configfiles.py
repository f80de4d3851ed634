"""Files a configuration names (certificates, keys), checked when a service starts: one that
cannot be read stops the start with the configuration file's line, not a traceback later."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml

from hallkit.configtext import ConfigError, line_of
from protocols.transport import TlsFiles

# where in the YAML (e.g. ("broker", "tls", "ca")) and the path found there
Named = tuple[tuple[str | int, ...], Path]


def check_readable(text: str, source: str, files: Iterable[Named]) -> None:
    """Raise ConfigError listing every named file that cannot be opened for reading."""
    problems = []
    node: yaml.Node | None = None
    for loc, path in files:
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            if node is None:
                node = yaml.compose(text)
            line = line_of(node, loc)
            where = f"{source}:{line}" if line else source
            problems.append(
                f"{where}: {'.'.join(map(str, loc))}: 无法读取 / cannot read {path}: {exc.strerror}"
            )
    if problems:
        raise ConfigError("\n".join(problems))


def tls_files(
    loc: tuple[str | int, ...], tls: TlsFiles | None, parts: tuple[str, ...] = ("ca", "cert", "key")
) -> list[Named]:
    """The files of a TLS section, if it is configured (a server's has no ``ca``)."""
    if tls is None:
        return []
    return [((*loc, part), Path(getattr(tls, part))) for part in parts]
