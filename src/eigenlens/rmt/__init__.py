"""Random matrix theory baselines: ensembles, limiting laws, edges and outliers, fits (layer 2).

Imports nothing else of eigenlens except the leaf utilities (``_lazy``, ``_result``) and
``eigenlens.linalg.random.resolve_generator``. Names are served lazily from their modules:

* :mod:`~eigenlens.rmt.laws` — semicircle, Marchenko–Pastur, quarter circle, circular, elliptic.
* :mod:`~eigenlens.rmt.ensembles` — Wigner, Wishart, Ginibre, band, spiked, Haar.
* :mod:`~eigenlens.rmt.edges` — BBP transitions, overlaps, Tracy–Widom, edge tests.
* :mod:`~eigenlens.rmt.fits` — Marchenko–Pastur and power-law fits, KS, stable rank, entropies.
"""

from eigenlens._lazy import lazy_exports

_EXPORTS = {
    # laws
    "Law": "eigenlens.rmt.laws",
    "PlaneLaw": "eigenlens.rmt.laws",
    "Semicircle": "eigenlens.rmt.laws",
    "MarchenkoPastur": "eigenlens.rmt.laws",
    "QuarterCircle": "eigenlens.rmt.laws",
    "Circular": "eigenlens.rmt.laws",
    "Elliptic": "eigenlens.rmt.laws",
    "semicircle": "eigenlens.rmt.laws",
    "marchenko_pastur": "eigenlens.rmt.laws",
    "quarter_circle": "eigenlens.rmt.laws",
    "circular": "eigenlens.rmt.laws",
    "elliptic": "eigenlens.rmt.laws",
    # ensembles
    "wigner": "eigenlens.rmt.ensembles",
    "wishart": "eigenlens.rmt.ensembles",
    "ginibre": "eigenlens.rmt.ensembles",
    "band": "eigenlens.rmt.ensembles",
    "band_profile": "eigenlens.rmt.ensembles",
    "doubly_stochastic": "eigenlens.rmt.ensembles",
    "elliptic_ensemble": "eigenlens.rmt.ensembles",
    "spiked_wigner": "eigenlens.rmt.ensembles",
    "spiked_wishart": "eigenlens.rmt.ensembles",
    "haar_orthogonal": "eigenlens.rmt.ensembles",
    "haar_unitary": "eigenlens.rmt.ensembles",
    # edges and outliers
    "bbp_threshold": "eigenlens.rmt.edges",
    "bbp_outlier": "eigenlens.rmt.edges",
    "bbp_spike": "eigenlens.rmt.edges",
    "bbp_overlap": "eigenlens.rmt.edges",
    "wigner_outlier": "eigenlens.rmt.edges",
    "wigner_spike": "eigenlens.rmt.edges",
    "wigner_overlap": "eigenlens.rmt.edges",
    "tracy_widom_cdf": "eigenlens.rmt.edges",
    "tracy_widom_ppf": "eigenlens.rmt.edges",
    "edge_threshold": "eigenlens.rmt.edges",
    "null_top_eigenvalues": "eigenlens.rmt.edges",
    "count_outliers": "eigenlens.rmt.edges",
    # fits
    "MPFit": "eigenlens.rmt.fits",
    "PowerLawFit": "eigenlens.rmt.fits",
    "LinearStatistic": "eigenlens.rmt.fits",
    "fit_marchenko_pastur": "eigenlens.rmt.fits",
    "fit_power_law": "eigenlens.rmt.fits",
    "ks_distance": "eigenlens.rmt.fits",
    "stable_rank": "eigenlens.rmt.fits",
    "spectral_entropy": "eigenlens.rmt.fits",
    "effective_rank": "eigenlens.rmt.fits",
    "linear_statistic": "eigenlens.rmt.fits",
}
_SUBMODULES = ("laws", "ensembles", "edges", "fits")

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
__all__ = sorted(_EXPORTS)
