"""Read CIF files (Materials Project, COD, ICSD exports) defensively into ``Crystal``.

Isotropic displacement parameters are kept: ``_atom_site_B_iso_or_equiv`` as is, or
``_atom_site_U_iso_or_equiv`` converted with B = 8π²U.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import replace
from pathlib import Path

from diffractnet.errors import StructureError
from diffractnet.structures.crystal import Crystal
from diffractnet.structures.elements import element_symbol

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


def _column(block: dict, key: str) -> list:
    values = block.get(key, [])
    return [values] if isinstance(values, str) else list(values)


def _element_of(text: str) -> str:
    """'Fe2+' or 'Fe1' → 'Fe' (the leading element letters)."""
    match = re.match(r"[A-Z][a-z]?", str(text).strip())
    return match.group(0) if match else ""


def _species_b(label: str, element: str, block: dict, b_values: dict[str, float]) -> float:
    """B of ``element`` on the site pymatgen labelled ``label``.

    pymatgen merges atom_site rows sharing a position into one disordered site that keeps only the
    last row's label; each species gets the B of its own row at that position (same element).
    """
    labels = _column(block, "_atom_site_label")
    symbols = _column(block, "_atom_site_type_symbol") or labels
    xyz = [_column(block, f"_atom_site_fract_{axis}") for axis in "xyz"]
    if _element_of(symbols[labels.index(label)] if label in labels else label) == element:
        return b_values[label]
    try:
        rows = {lab: (_element_of(sym), [_cif_number(col[i]) for col in xyz])
                for i, (lab, sym) in enumerate(zip(labels, symbols))}
        here = rows[label][1]
        for lab, (el, pos) in rows.items():
            if el == element and lab in b_values and None not in pos + here and all(
                    abs((p - q + 0.5) % 1.0 - 0.5) < 1e-3 for p, q in zip(pos, here)):
                return b_values[lab]
    except (KeyError, IndexError):
        pass
    return b_values[label]


def load_cif(path: str | Path, name: str | None = None, symprec: float = 1e-3) -> Crystal:
    """The first structure of a CIF file as a ``Crystal`` (conventional cell, as written in the file).

    Raises ``StructureError`` naming the file and the problem for a missing, empty, oversized or
    unparsable file, or one without atoms.
    """
    from pymatgen.io.cif import CifParser

    path = Path(path)
    if not path.exists():
        raise StructureError(f"CIF file '{path}' does not exist")
    if not path.is_file():
        raise StructureError(f"CIF path '{path}' is not a file")
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
    try:
        crystal = Crystal.from_pymatgen(structure, name=name or path.stem, source=f"CIF {path.name}",
                                        symprec=symprec)
    except StructureError as exc:  # unknown element, bad occupancy, degenerate cell...
        raise StructureError(f"CIF file '{path}': {exc}") from None
    labels = [getattr(site, "label", None) for site in structure]
    for block in blocks:  # the block holding this structure's atoms (not e.g. a leading data_global)
        b_values = _b_by_label(block)
        if b_values and all(label in b_values for label in labels):
            b_list = [_species_b(site.label, element_symbol(str(getattr(sp, "symbol", sp))), block, b_values)
                      for site in structure for sp in site.species]
            crystal = replace(crystal, sites=tuple(replace(s, b_iso_a2=b) for s, b in zip(crystal.sites, b_list)))
            break
    return crystal
