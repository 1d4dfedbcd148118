"""Dollar metrics: chip-seconds per token at the user's price per chip-hour (the catalog has no
prices), written once in cost_models.metrics and checked here by hand arithmetic."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cost_models.errors import InvalidInputError
from cost_models.metrics import METRICS, metric_arrays, usd_per_hour, usd_per_million_tokens

PRICE = 2.49  # dollars per chip-hour, illustrative


def test_eight_chips_serving_1000_tokens_per_s_at_2_49_an_hour() -> None:
    # 8 chips x $2.49/h = $19.92/h; / 3600 s/h = $0.005533/s; / 1000 tokens/s = $5.533e-6 a token,
    # $5.533 per million.
    chip_s_per_token = 8 / 1000
    assert usd_per_million_tokens(chip_s_per_token, PRICE) == pytest.approx(5.5333333, rel=1e-6)
    assert usd_per_hour(8, PRICE) == pytest.approx(19.92)


def test_serving_cost_is_chips_times_price_over_tokens_per_s() -> None:
    # tokens_per_s_per_chip of 8 chips serving 1000 tokens/s is 125; a deployment that keeps
    # up with nothing serves 0 tokens/s: infinitely expensive, not a division warning.
    served = SimpleNamespace(tokens_per_s_per_chip=np.array([125.0, 250.0, 0.0]))
    out = metric_arrays(None, None, ["serving.cost_usd_per_million_tokens"], served, price_per_chip_hour_usd=PRICE)  # type: ignore[arg-type]
    # 250 tokens/s/chip: 4 chips for 1000 tokens/s, 4 x 2.49 / 3600 / 1000 x 1e6 = 2.7667.
    np.testing.assert_allclose(out["serving.cost_usd_per_million_tokens"][:2], [5.5333333, 2.7666667], rtol=1e-6)
    assert out["serving.cost_usd_per_million_tokens"][2] == np.inf


def test_static_costs_are_the_chip_seconds_at_the_price() -> None:
    # 0.02 chip-s a prompt token at $3.19/h: 0.02 x 3.19 / 3600 x 1e6 = 17.722 $/M tokens;
    # 0.008 chip-s an output token: 7.0889.
    result = SimpleNamespace(
        prefill=SimpleNamespace(cost_chip_s_per_token=np.array([0.02])),
        decode=SimpleNamespace(cost_chip_s_per_token=np.array([0.008])),
    )
    names = ["prefill.cost_usd_per_million_tokens", "decode.cost_usd_per_million_tokens"]
    out = metric_arrays(result, None, names, price_per_chip_hour_usd=3.19)  # type: ignore[arg-type]
    assert out[names[0]][0] == pytest.approx(17.722222, rel=1e-6)
    assert out[names[1]][0] == pytest.approx(7.0888889, rel=1e-6)


@pytest.mark.parametrize("name", [m for m in METRICS if METRICS[m].needs_price])
def test_a_dollar_metric_without_a_price_is_one_line(name: str) -> None:
    result = SimpleNamespace(
        prefill=SimpleNamespace(cost_chip_s_per_token=np.array([0.02])),
        decode=SimpleNamespace(cost_chip_s_per_token=np.array([0.008])),
    )
    served = SimpleNamespace(tokens_per_s_per_chip=np.array([125.0]))
    with pytest.raises(InvalidInputError) as info:
        metric_arrays(result, None, [name], served)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert message == f"metric: {name} needs a price per chip-hour; add price_per_chip_hour_usd: (dollars) to the spec"


def test_dollar_metrics_are_named_with_their_unit() -> None:
    priced = {m.name for m in METRICS.values() if m.needs_price}
    assert priced == {
        "prefill.cost_usd_per_million_tokens",
        "decode.cost_usd_per_million_tokens",
        "serving.cost_usd_per_million_tokens",
    }
    assert all(METRICS[m].unit == "USD/M tokens" and METRICS[m].direction == "minimize" for m in priced)
