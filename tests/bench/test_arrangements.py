"""kcnn.bench.arrangements: one claim per arrangement ``kcnn.layers.dispatch`` keeps (its rows are
measured at the tiny size, and checked, by ``--section conv`` in test_bench.py)."""
from kcnn.bench import arrangements
from kcnn.layers import dispatch


def test_every_kept_arrangement_has_a_claim():
    """The arrangements dispatch's docstring keeps are exactly those with a figure."""
    kept = {claim[0] for claim in arrangements.CLAIMS}
    assert kept == {"im2col", "kernel_rows", "torch", "xla", "bands", "toeplitz"}
    assert all(f'``"{name}"``' in dispatch.__doc__ for name in kept - {"xla"})
    assert "``xla``" in dispatch.__doc__ and "kcnn-bench --section conv" in dispatch.__doc__


def test_claims_compare_against_the_simpler_form():
    for arrangement, backend, model, metric, kept, reference in arrangements.CLAIMS:
        assert backend in ("tensorflow", "jax", "torch") and model in arrangements.SHAPES
        assert metric in ("time_ms", "peak_rss_mib")
        simpler = {"xla": "bands/no-xla", "bands": "kernel_rows", "toeplitz": "im2col",
                   "torch": "auto/no-torch-module"}.get(arrangement, "reference")
        assert reference == simpler, arrangement
        assert kept.split("/")[0] in dispatch.ALGORITHMS
