"""`cxr14 export`: a checkpoint as files other tools load, each checked against the checkpoint before it is kept.

    fields.py        what cxr14 needs besides the weights (labels, data config, thresholds, temperatures, card),
                     as one JSON block: config.json's "cxr14" key, the ONNX graph's metadata
    hf.py            the timm / Hugging Face folder (timm's own `save_for_hf`), and reading it back
    card.py          the folder's README.md model card (Hugging Face metadata header + text)
    onnx_file.py     the ONNX graph: pixels -> normalise -> model -> temperature -> probabilities
    onnx_runtime.py  an ONNX graph run by ONNX Runtime behind the same interface as `engine.Classifier`
    verify.py        phantom films through the checkpoint and through each file; the largest difference
    run.py           the command: staging folder, writers, checks, then the folder is put in place

Nothing here is imported by the CLI until `cxr14 export` runs, and onnx/onnxruntime/onnxscript only when an
ONNX file is written or read.
"""
