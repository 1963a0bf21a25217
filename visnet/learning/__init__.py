"""Active learning: rounds of committee MD → harvest uncertain frames → label them (xTB or any
ASE calculator) → fine-tune the committee, until no frame is uncertain (``visnet learn``).

    from visnet.learning import learn
    result = learn("CCOc1ccc(NC(C)=O)cc1", model="default", rounds=3, test="test.extxyz", out="runs/learn")
"""

from visnet.learning.loop import LearnResult, learn
from visnet.learning.options import LearnOptions
from visnet.learning.state import RoundState

__all__ = ["LearnOptions", "LearnResult", "RoundState", "learn"]
