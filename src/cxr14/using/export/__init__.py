"""`cxr14 export`: a checkpoint as files other tools load, each checked against the checkpoint before it is kept.

    hf.py            the timm / Hugging Face folder (timm's own `save_for_hf`)
    card.py          the folder's README.md model card (Hugging Face metadata header + text)
    onnx_file.py     the ONNX graph: pixels -> normalise -> model -> temperature -> probabilities
    verify.py        phantom films through the checkpoint and through each file; the largest difference
    run.py           the command: staging folder, writers, checks, then the folder is put in place

Reading the files back lives below, in `model/` (the one loader reads them too): `model.fields` (the JSON block
of labels, data config, thresholds, temperatures and card that every file carries), `model.hf_folder` and
`model.onnx_runtime`. Nothing here is imported by the CLI until `cxr14 export` runs, and
onnx/onnxruntime/onnxscript only when an ONNX file is written or read.
"""
