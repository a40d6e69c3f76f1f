# mmdeploy deploy-config base: plain ONNX for ONNX Runtime, batch, height
# and width dynamic. Opset 17 (mmdeploy's configs use 11): DLU's kernel
# sampling is ONNX's GridSample, which needs opset >= 16.
# custom_imports loads dlu_mm.deploy (mmdeploy's rewriters for DLU models
# and the torch-2.13 bridges) when mmdeploy loads the config.
custom_imports = dict(imports=['dlu_mm.deploy'], allow_failed_imports=False)
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=17,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    input_shape=None,
    dynamic_axes={'input': {0: 'batch', 2: 'height', 3: 'width'}})
backend_config = dict(type='onnxruntime')
