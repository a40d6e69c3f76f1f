"""Build-time checks of the CARAFE/DLU constructor arguments, with messages
that name the argument, its value and what is accepted."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_upsampler_args(channels, scale_factor, up_kernel, up_group,
                         encoder_kernel, encoder_dilation,
                         compressed_channels) -> None:
    """Raise ``ValueError`` for the first argument that is out of range."""
    positive = dict(channels=channels, up_group=up_group,
                    encoder_dilation=encoder_dilation,
                    compressed_channels=compressed_channels)
    for name, value in positive.items():
        if not _is_int(value) or value < 1:
            raise ValueError(f'{name} must be a positive integer, '
                             f'got {value!r}')
    if not _is_int(scale_factor) or scale_factor < 1:
        raise ValueError(f'scale_factor must be an integer >= 1 '
                         f'(e.g. 2 for 2x upsampling), got {scale_factor!r}')
    for name, value in dict(up_kernel=up_kernel,
                            encoder_kernel=encoder_kernel).items():
        if not _is_int(value) or value < 1 or value % 2 == 0:
            raise ValueError(f'{name} must be a positive odd integer '
                             f'(1, 3, 5, ...), got {value!r}')
    if channels % up_group:
        raise ValueError(f'channels={channels} must be divisible by '
                         f'up_group={up_group} (accepted up_group values: '
                         f'divisors of {channels})')


def check_input(x, channels: int, layer: str) -> None:
    """Check a forward input: 4-D (N, C, H, W) with C == channels."""
    if x.dim() != 4:
        raise ValueError(f'{layer} expects a 4-D input (N, C, H, W), got a '
                         f'{x.dim()}-D tensor of shape {tuple(x.shape)}')
    if x.shape[1] != channels:
        raise ValueError(f'{layer} was built with channels={channels} but '
                         f'got an input with {x.shape[1]} channels (shape '
                         f'{tuple(x.shape)})')
