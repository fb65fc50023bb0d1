"""What distinguishes I-GOS from iGOS++: the masks optimised, the path score terms and the regulariser."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PathTerm", "Variant", "IGOS_VARIANT", "IGOS_PP_VARIANT"]


@dataclass(frozen=True)
class PathTerm:
    """One path-integrated score term of the loss.

    Attributes
    ----------
    insertion : bool
        False: deletion path ``φ(x, b, t·m)`` (keep the image where ``m = 1``); True: insertion path
        ``φ(b, x, t·m)`` (baseline where ``m = 1``).
    sign : float
        ``+1``: the score is minimised; ``−1``: maximised.
    masks : tuple of int
        Which masks are multiplied (after upsampling) to form this term's mask.
    """

    insertion: bool
    sign: float
    masks: tuple[int, ...]


@dataclass(frozen=True)
class Variant:
    """What distinguishes I-GOS from iGOS++: the masks, the score terms, their gradient weight, the regulariser."""

    n_masks: int
    terms: tuple[PathTerm, ...]
    #: Factor on the score-term gradient (iGOS++ halves it "to balance ... with the regularization terms").
    grad_weight: float
    #: Bilateral TV on the image (iGOS++) instead of plain TV (I-GOS).
    bilateral: bool


IGOS_VARIANT = Variant(1, (PathTerm(False, 1.0, (0,)),), 1.0, False)
#: Masks 0 = deletion M_d, 1 = insertion M_i: D(U_d·U_i) − S_I(U_d·U_i) + D(U_d) − S_I(U_i).
IGOS_PP_VARIANT = Variant(
    2,
    (
        PathTerm(False, 1.0, (0, 1)),
        PathTerm(True, -1.0, (0, 1)),
        PathTerm(False, 1.0, (0,)),
        PathTerm(True, -1.0, (1,)),
    ),
    0.5,
    True,
)
