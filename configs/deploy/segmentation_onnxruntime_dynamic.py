# Segmentors (e.g. configs/demo/upernet-dlu_r18_demo-ade-256x256.py):
#   input (N, 3, H, W) -> output (N, num_classes, H, W) logits
#   (with_argmax=True would give (N, 1, H, W) class indices instead).
_base_ = ['./_base_/onnxruntime_dynamic.py']
onnx_config = dict(
    output_names=['output'],
    dynamic_axes={'output': {0: 'batch', 2: 'height', 3: 'width'}})
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=False)
