"""BASELINE, not the chain: the featurization approach of the published P8 notebooks.

A faithful re-implementation, kept out of ``helpers/`` on purpose, of what those notebooks do
(OpenClassrooms "Fruits!" P8 notebooks, written for EMR):

1. ``spark.read.format("binaryFile")`` on the image folder, label from the path;
2. ``images.repartition(20)``;
3. a ``SCALAR_ITER`` pandas UDF that, in **every task**, rebuilds Keras' MobileNetV2
   (``include_top=True``, then ``Model(inputs, layers[-2].output)``: the 1280 pooled features)
   and sets its weights from a broadcast of ``model.get_weights()``; each image is opened with
   PIL, resized to 224x224 (``Image.resize`` default filter), ``img_to_array``,
   ``mobilenet_v2.preprocess_input``, and every Arrow batch goes through ``model.predict``;
4. a Python ``udf`` turning the ``array<float>`` into a ``DenseVector``;
5. ``pyspark.ml.feature.PCA`` fit, then ``transform`` and ``write.parquet`` of the result;
   nothing is cached, so every Spark action (the PCA's passes, the final write) runs the UDF again,
   exactly as in the notebooks.

Spark settings are Spark's defaults (the notebooks set none), on the same ``local[2]`` master
as the chain. The weights are the chain's offline torchvision ImageNet weights put into Keras'
own MobileNetV2 graph (no internet here): the same shapes and the same amount of computation as
``weights="imagenet"``. Prints one JSON line: seconds per phase and in total.

Usage: ``python -m benchmarks.p8_baseline INPUT OUTPUT [--master local[2]] [--k 100]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    started = time.perf_counter()
    seconds = {}

    import io

    import numpy as np
    import pandas as pd
    from PIL import Image
    from pyspark.ml.feature import PCA
    from pyspark.ml.linalg import DenseVector, VectorUDT
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import PandasUDFType, col, element_at, pandas_udf, split, udf

    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (
        SparkSession.builder.appName("p8-baseline")
        .master(args.master)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.memory", "4g")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    sc = spark.sparkContext
    seconds["session"] = time.perf_counter() - started
    mark = time.perf_counter()

    images = (
        spark.read.format("binaryFile")
        .option("pathGlobFilter", "*.jpg")
        .option("recursiveFileLookup", "true")
        .load(args.input)
    )
    images = images.withColumn("label", element_at(split(images["path"], "/"), -2))

    # Driver: the model once, its weights broadcast (the notebooks' brodcast_weights).
    from keras import Model
    from keras.applications import MobileNetV2

    from helpers.weights import load_weight_set

    size = args.image_size
    weight_set = load_weight_set("torchvision")

    def keras_graph():
        model = MobileNetV2(weights=None, include_top=True, input_shape=(size, size, 3))
        for layer in model.layers:
            layer.trainable = False
        return Model(inputs=model.input, outputs=model.layers[-2].output)

    driver_model = keras_graph()
    full = MobileNetV2(weights=None, include_top=True, input_shape=(size, size, 3))
    for layer in full.layers:
        if layer.weights:
            layer.set_weights(weight_set.layers[layer.name])
    driver_model.set_weights(Model(inputs=full.input, outputs=full.layers[-2].output).get_weights())
    broadcast_weights = sc.broadcast(driver_model.get_weights())
    del full, driver_model

    def model_fn():
        model = MobileNetV2(weights=None, include_top=True, input_shape=(size, size, 3))
        for layer in model.layers:
            layer.trainable = False
        new_model = Model(inputs=model.input, outputs=model.layers[-2].output)
        new_model.set_weights(broadcast_weights.value)
        return new_model

    def preprocess(content):
        from keras.applications.mobilenet_v2 import preprocess_input
        from keras.utils import img_to_array

        img = Image.open(io.BytesIO(content)).resize([size, size])
        return preprocess_input(img_to_array(img))

    def featurize_series(model, content_series):
        batch = np.stack(content_series.map(preprocess))
        preds = model.predict(batch, verbose=0)
        return pd.Series([p.flatten() for p in preds])

    @pandas_udf("array<float>", PandasUDFType.SCALAR_ITER)
    def featurize_udf(content_series_iter):
        model = model_fn()
        for content_series in content_series_iter:
            yield featurize_series(model, content_series)

    features_df = images.repartition(20).select(
        col("path"), col("label"), featurize_udf("content").alias("features")
    )
    to_vector = udf(lambda values: DenseVector(values), VectorUDT())
    vectors = features_df.withColumn("features_vec", to_vector("features"))
    seconds["setup"] = time.perf_counter() - mark
    mark = time.perf_counter()

    k = min(args.k, max(1, images.count() - 1))
    pca = PCA(k=k, inputCol="features_vec", outputCol="pca_features")
    model = pca.fit(vectors)
    seconds["pca_fit"] = time.perf_counter() - mark
    mark = time.perf_counter()
    model.transform(vectors).select("path", "label", "pca_features").write.mode(
        "overwrite"
    ).parquet(args.output)
    seconds["transform_write"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started
    seconds["total_after_session"] = seconds["total"] - seconds["session"]
    written = spark.read.parquet(args.output).count()
    spark.stop()
    print(
        json.dumps(
            {
                "approach": "p8-baseline",
                "images": written,
                "k": k,
                "seconds": {name: round(value, 3) for name, value in seconds.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
