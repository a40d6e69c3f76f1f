# Two-stage detectors (e.g. configs/demo/faster-rcnn_r18_fpn-dlu_demo-coco.py)
# to one ONNX graph, NMS included:
#   input (N, 3, H, W) -> dets (N, K, 5) = x1 y1 x2 y2 score, labels (N, K).
# Post-processing as mmdeploy's mmdet base config; the model's own test_cfg
# (RPN / R-CNN thresholds, max_per_img) takes precedence where it sets one.
_base_ = ['./_base_/onnxruntime_dynamic.py']
onnx_config = dict(
    output_names=['dets', 'labels'],
    dynamic_axes={
        'dets': {0: 'batch', 1: 'num_dets'},
        'labels': {0: 'batch', 1: 'num_dets'},
    })
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1))
