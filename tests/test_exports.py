"""Every public name in the export tables resolves, and never to a module (even after submodule imports)."""

import importlib
import pkgutil
import types

import pytest

import eigenlens

PACKAGES = ["eigenlens", "eigenlens.linalg", "eigenlens.nn", "eigenlens.rmt", "eigenlens.infinite"]


def _import_all_submodules():
    for info in pkgutil.walk_packages(eigenlens.__path__, "eigenlens."):
        importlib.import_module(info.name)


@pytest.mark.parametrize("package", PACKAGES)
def test_exports_resolve_to_objects_not_modules(package):
    _import_all_submodules()
    pkg = importlib.import_module(package)
    for name in pkg._EXPORTS:
        value = getattr(pkg, name)
        assert not isinstance(value, types.ModuleType), f"{package}.{name} is a module"
        assert name in dir(pkg)


def test_top_level_matches_api_names():
    for name in ["LinearOperator", "aslinearoperator", "linear_operator", "lanczos", "eigsh", "svds", "trace",
                 "diagonal", "spectral_density", "randomized_svd", "nystrom", "lstsq", "sketch", "hessian", "ggn",
                 "fisher", "jacobian", "empirical_ntk", "weight_spectra", "curvature_summary"]:
        assert callable(getattr(eigenlens, name)), name
    for name in ["semicircle", "marchenko_pastur", "circular", "quarter_circle", "wigner", "wishart", "ginibre",
                 "band", "spiked_wishart", "spiked_wigner", "fit_marchenko_pastur", "fit_power_law", "ks_distance",
                 "bbp_outlier"]:
        assert callable(getattr(eigenlens.rmt, name)), name
    for name in ["kernels", "program", "predict", "jacobian_spectrum_law"]:
        assert callable(getattr(eigenlens.infinite, name)), name


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        eigenlens.nope  # noqa: B018
