"""The model package: what training ships and serving, monitoring and batch scoring read.

A package is one ONNX graph, its contract (`contract.json`) and the assets its codec needs (a tokenizer,
say). `modelpkg.contract` says what a package promises, `modelpkg.package` where its files live (in a
bundle folder and in MLflow) and how to log and load one, `modelpkg.codecs` how records of each kind
(tabular, image, text) become ONNX feeds and prediction-log entries, and `modelpkg.runtime` runs it.

`contract` and `package` import pydantic and the standard library only (MLflow only inside the two
functions that talk to it), so a serving process can read a package without any training code.
"""
