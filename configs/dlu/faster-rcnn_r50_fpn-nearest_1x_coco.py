# Nearest-neighbour baseline in the CARAFE/DLU topology: FPN_Upsample with
# upsample type 'nearest' (identical to mmdet's FPN_CARAFE with 'nearest').
# Not mmdet's stock FPN on purpose: that one makes P6 by max-pooling P5 and
# upsamples 3 times, where FPN_CARAFE/FPN_Upsample make P6 by a stride-2
# conv on C5 and upsample 4 times (P6 into P5 as well), and mmdet's stock
# config pads to 32, not 64. Only this choice makes the table's rows differ
# in the upsampler alone. (mmdet's stock FPN baseline, 37.4 box AP, is
# mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py.)
_base_ = './faster-rcnn_r50_fpn-dlu_1x_coco.py'

model = dict(neck=dict(upsample_cfg=dict(_delete_=True, type='nearest')))
