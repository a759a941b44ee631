"""Rebuild tests/fixtures/tf2onnx/keras_conv3out.onnx: a seeded tf_keras model exported by tf2onnx.

The model is what Keras users bring: NHWC image input, a conv front end, a log and a per-row
normalisation between Transpose pairs, and three outputs (a Reshape of NHWC features into a
sequence, a global-average-pooled head, a 1x1 conv map). tf2onnx is not part of edgeport's install
(nothing needs it at run time); it installs against constraints.txt without changing any pin:

    .venv/bin/pip install --no-deps --target /tmp/tf2onnx tf2onnx==1.17.0
    PYTHONPATH=/tmp/tf2onnx .venv/bin/python scripts/make_tf2onnx_fixture.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tf2onnx" / "keras_conv3out.onnx"
H, W, C = 24, 20, 3


def build():
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    tf.random.set_seed(0)
    np.random.seed(0)
    inp = keras.Input((H, W, C), batch_size=1, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(12, 3, strides=(2, 1), padding="same", name="c2")(x)
    x = keras.layers.Lambda(lambda t: tf.math.log(tf.abs(t) + 1.0), name="log")(x)
    wcol = np.linspace(0.5, 1.5, W, dtype=np.float32).reshape(W, 1)
    # per-row normalisation over the width axis, scaled per column: elementwise ops in NHWC
    x = keras.layers.Lambda(lambda t: (t - tf.reduce_mean(t, axis=2, keepdims=True)) * wcol, name="norm")(x)
    frames = keras.layers.Dense(6, name="frames")(keras.layers.Reshape((H // 2, W * 12))(x))
    clip = keras.layers.Dense(4, name="clip")(keras.layers.GlobalAveragePooling2D()(x))
    heat = keras.layers.Conv2D(2, 1, name="heat")(x)
    return keras.Model(inp, [frames, clip, heat])


def main() -> int:
    import onnx
    import tensorflow as tf
    import tf2onnx

    model = build()
    spec = (tf.TensorSpec((1, H, W, C), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(OUT))
    print(f"{OUT}: producer {proto.producer_name} {proto.producer_version}, "
          f"{sum(n.op_type == 'Transpose' for n in proto.graph.node)} Transpose nodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
