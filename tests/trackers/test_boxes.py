"""Boxes of candidate masks, their (cx, cy, a, h) form and their IoU with one box each."""

import torch

from mosam_train.trackers.boxes import box_iou, mask_boxes, xyah_to_xyxy, xyxy_to_xyah


def test_the_box_of_each_mask_is_the_extent_of_its_positive_pixels():
    masks = torch.full((2, 3, 8, 10), -1.0)
    masks[0, 0, 2:5, 3:9] = 2.0  # rows 2..4, columns 3..8
    masks[0, 1, 6, 1] = 0.5  # one pixel
    masks[1, 0, 0:8, 0:10] = 0.0  # zero logits are out: empty
    masks[1, 2, 7, 0] = 1.0
    masks[1, 2, 0, 9] = 1.0
    boxes = mask_boxes(masks)
    assert boxes.shape == (2, 3, 4) and boxes.dtype == torch.float64
    assert boxes[0, 0].tolist() == [3, 2, 8, 4]
    assert boxes[0, 1].tolist() == [1, 6, 1, 6]
    assert boxes[0, 2].tolist() == [0, 0, 0, 0]  # empty
    assert boxes[1, 0].tolist() == [0, 0, 0, 0]
    assert boxes[1, 2].tolist() == [0, 0, 9, 7]
    assert mask_boxes(masks[0, 0] > 0).tolist() == [3, 2, 8, 4]  # bool masks too


def test_xyxy_and_xyah_convert_both_ways():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 3.0, 6.0]], dtype=torch.float64)
    xyah = xyxy_to_xyah(boxes)
    assert xyah.tolist() == [[30, 60, 0.5, 80], [1.5, 3, 0.5, 6]]
    assert torch.equal(xyah_to_xyxy(xyah), boxes)
    # no height (empty, one pixel row): aspect 0, not 0 / 0
    flat = xyxy_to_xyah(torch.tensor([[0.0, 0.0, 0.0, 0.0], [2.0, 5.0, 7.0, 5.0]]))
    assert flat.tolist() == [[0, 0, 0, 0], [4.5, 5, 0, 0]]


def test_iou_of_each_object_box_with_its_candidates():
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]])
    cands = torch.tensor(
        [
            [[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0]],
            [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 2.0, 2.0]],
        ]
    )
    iou = box_iou(box, cands)
    assert iou.shape == (2, 3)
    assert torch.allclose(iou[0], torch.tensor([1.0, 50 / 150, 0.0]))
    assert iou[1].tolist() == [0, 0, 0]  # an empty box overlaps nothing (not NaN)
    # a Kalman prediction with a negative extent has no area
    inverted = torch.tensor([[10.0, 10.0, 0.0, 0.0]])
    assert box_iou(inverted, cands[:1]).tolist() == [[0, 0, 0]]
    empty_cands = torch.zeros(1, 2, 4)
    assert box_iou(box[:1], empty_cands).tolist() == [[0, 0]]
