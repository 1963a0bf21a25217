"""Bad input to ``visnet.explain``: each refused in one line naming the culprit."""

from __future__ import annotations

import pytest
from ase import Atoms
from ase.build import bulk, molecule

from visnet.explain import explain


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"structure": "CCO", "steps": 1, "method": "integrated_gradients"}, "steps must be between 2 and 512"),
        ({"structure": "CCO", "method": "shap"}, "method must be one of"),
        ({"structure": "CCO", "max_frames": 0}, "max_frames must be >= 1"),
        ({"structure": bulk("C", "diamond", a=3.57)}, "frame 0 is periodic"),
        ({"structure": []}, "holds no frames"),
        ({"structure": Atoms("H2", positions=[[0, 0, 0], [float("nan"), 0, 0]])}, "non-finite positions"),
        ({"structure": molecule("CH4"), "model": "qm9", "property": "U1"}, "no model predicts property 'U1'"),
        ({"structure": "CCCl"}, "Cl (Z=17)"),
    ],
    ids=["steps", "method", "max_frames", "periodic", "empty", "nan", "property", "element"],
)
def test_bad_input_is_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        explain(attention=False, **kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_structure_of_another_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="structure must be Atoms"):
        explain(42)
