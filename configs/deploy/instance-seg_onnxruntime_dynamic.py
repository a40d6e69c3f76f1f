# Mask R-CNN-style detectors
# (e.g. configs/demo/mask-rcnn_r18_fpn-dlu_demo-coco.py):
#   input (N, 3, H, W) -> dets (N, K, 5), labels (N, K),
#   masks (N, K, 28, 28): each detection's mask probabilities in its box
#   (export_postprocess_mask=False: pasting into the image stays outside,
#   as in mmdeploy's ONNX Runtime config).
_base_ = ['./detection_onnxruntime_dynamic.py']
onnx_config = dict(
    output_names=['dets', 'labels', 'masks'],
    dynamic_axes={'masks': {0: 'batch', 1: 'num_dets'}})
codebase_config = dict(post_processing=dict(export_postprocess_mask=False))
