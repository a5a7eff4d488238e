"""Helpers to run diffsims on the same crystal and orientation as diffractnet (test-only).

The orix phase is built the way PEERS.md found correct for every crystal system: the asymmetric
unit (one representative per Wyckoff site) on a plain diffpy lattice, expanded by orix's own
symmetry code — an expansion independent of ours (pyxtal).
"""

from __future__ import annotations

import numpy as np

from diffractnet.structures.library import expand_wyckoff_site


# diffpy/orix tabulate these groups in ITA origin choice 1; pyxtal (and our library) in origin
# choice 2. Shift of the origin-2 coordinates that gives origin-1 ones (ITA Vol. A).
ORIGIN_CHOICE_1_SHIFT = {227: (-0.125, -0.125, -0.125)}


def orix_phase_from_entry(entry: dict):
    """orix Phase of a library entry, expanded by orix from the asymmetric unit."""
    from diffpy.structure import Atom, Lattice, Structure
    from orix.crystal_map import Phase

    from diffractnet.structures.library import lattice_parameters

    sg = entry["space_group"]
    atoms = []
    for site in entry["sites"]:
        representative = expand_wyckoff_site(sg, site["wyckoff"], site.get("xyz"), "peer test")[0]
        representative = np.mod(representative + np.array(ORIGIN_CHOICE_1_SHIFT.get(sg, (0, 0, 0))), 1.0)
        atoms.append(Atom(site["element"], xyz=list(representative)))
    lattice = Lattice(*lattice_parameters(sg, entry["lattice"], "peer test"))
    return Phase(space_group=sg, structure=Structure(atoms=atoms, lattice=lattice)).expand_asymmetric_unit()


def diffsims_spots(phase, quaternion, voltage_kV, g_max_invA, s_max_invA, debye_waller):
    """diffsims spots (hkl int (n,3), xy (n,2) [Å⁻¹], |F|² (n,)) with a flat excitation profile."""
    from diffsims.generators.simulation_generator import SimulationGenerator
    from orix.quaternion import Rotation

    gen = SimulationGenerator(accelerating_voltage=voltage_kV, scattering_params="lobato",
                              shape_factor_model=lambda s, w: np.ones_like(s))
    # orix's hkl range is too small for hexagonal cells (PEERS.md): ask for more, cut on |g| below.
    sim = gen.calculate_diffraction2d(phase, Rotation(np.asarray(quaternion)), reciprocal_radius=1.3 * g_max_invA,
                                      max_excitation_error=s_max_invA, with_direct_beam=False,
                                      debye_waller_factors=debye_waller, show_progressbar=False)
    vec = sim.coordinates
    xyz = np.asarray(vec.data)
    hkl = np.rint(np.asarray(vec.hkl)).astype(int)
    intensity = np.asarray(vec.intensity)
    keep = (np.linalg.norm(xyz, axis=1) <= g_max_invA) & (intensity > 1e-8 * intensity.max())
    return hkl[keep], xyz[keep, :2], intensity[keep]
