"""The model a config makes is picked from the parts it gives, and declares what it adds."""

import pytest

from mosam_train.lit.module import MoSAMModule
from mosam_train.models.mosam import MoSAMTracker
from mosam_train.models.sam2_builder import build_sam2
from mosam_train.models.variants import build_video_model
from mosam_train.models.video_sam import VideoSAM


def test_sam2_alone_adds_nothing_and_needs_no_flow():
    model = build_video_model(build_sam2("sam2.1_micro"))
    assert type(model) is VideoSAM
    assert model.added_parameter_prefixes == ()
    assert not model.needs_flow and model.flow_provider is None


@pytest.mark.parametrize(
    ("parts", "prefixes", "flow"),
    [
        ({"mgp": {"sparse": True, "dense": True}}, ("mgp.",), True),
        ({"mgp": {"sparse": True, "dense": False}}, ("mgp.",), False),
        ({"stms": {"stride": 1, "candidates": 6, "top_k": 6}}, ("stms.",), False),
        ({"mgp": {"sparse": True, "dense": False}, "stms": {"top_k": 3}}, ("mgp.", "stms."), False),
    ],
)
def test_mosam_parts_make_mosam_and_declare_their_parameters(parts, prefixes, flow):
    model = build_video_model(build_sam2("sam2.1_micro"), **parts)
    assert isinstance(model, MoSAMTracker)
    assert model.added_parameter_prefixes == prefixes
    assert model.needs_flow == flow and (model.flow_provider is not None) == flow
    names = {n for n, _ in model.named_parameters() if not n.startswith("sam2.")}
    assert names and all(n.startswith(prefixes) for n in names)


def test_freezing_sam2_with_nothing_on_top_is_refused():
    with pytest.raises(ValueError, match="freeze_sam2 needs parts to train"):
        MoSAMModule(sam2={"variant": "sam2.1_micro"}, freeze_sam2=True)
