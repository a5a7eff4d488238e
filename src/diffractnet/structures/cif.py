"""Read CIF files (Materials Project, COD, ICSD exports) defensively into ``Crystal``.

Isotropic displacement parameters are kept: ``_atom_site_B_iso_or_equiv`` as is, or
``_atom_site_U_iso_or_equiv`` converted with B = 8π²U.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from diffractnet.errors import StructureError
from diffractnet.structures.crystal import Crystal

MAX_CIF_BYTES = 50_000_000


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _cif_number(text: str) -> float | None:
    """'0.0123(4)' → 0.0123; '?' or '.' → None."""
    clean = str(text).split("(")[0].strip()
    try:
        value = float(clean)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _b_by_label(block: dict) -> dict[str, float]:
    labels = block.get("_atom_site_label", [])
    if isinstance(labels, str):
        labels = [labels]
    for key, factor in (("_atom_site_B_iso_or_equiv", 1.0), ("_atom_site_U_iso_or_equiv", 8 * math.pi**2)):
        values = block.get(key)
        if values is None:
            continue
        values = [values] if isinstance(values, str) else values
        out = {}
        for label, raw in zip(labels, values):
            number = _cif_number(raw)
            if number is not None and number >= 0:
                out[label] = number * factor
        return out
    return {}


def load_cif(path: str | Path, name: str | None = None, symprec: float = 1e-3) -> Crystal:
    """The first structure of a CIF file as a ``Crystal`` (conventional cell, as written in the file).

    Raises ``StructureError`` naming the file and the problem for a missing, empty, oversized or
    unparsable file, or one without atoms.
    """
    from pymatgen.io.cif import CifParser

    path = Path(path)
    if not path.is_file():
        raise StructureError(f"CIF file '{path}' does not exist")
    size = path.stat().st_size
    if size == 0 or size > MAX_CIF_BYTES:
        raise StructureError(f"CIF file '{path}' is {'empty' if size == 0 else 'larger than 50 MB'}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parser = CifParser(str(path))
            structures = parser.parse_structures(primitive=False)
            blocks = list(parser.as_dict().values())
    except Exception as exc:  # pymatgen raises many kinds on malformed input
        raise StructureError(f"cannot read CIF file '{path}': {_first_line(exc)}") from None
    if not structures:
        raise StructureError(f"CIF file '{path}' contains no crystal structure")
    structure = structures[0]
    if len(structure) == 0:
        raise StructureError(f"CIF file '{path}' has a structure with no atoms")
    b_values = _b_by_label(blocks[0]) if blocks else {}
    if b_values:
        labels = [getattr(site, "label", None) for site in structure]
        if all(label in b_values for label in labels):
            structure.add_site_property("b_iso", [b_values[label] for label in labels])
    return Crystal.from_pymatgen(structure, name=name or path.stem, source=f"CIF {path.name}", symprec=symprec)
