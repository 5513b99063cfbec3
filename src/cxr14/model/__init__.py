"""A model: built (timm), saved and read (checkpoints, exported files), run (the one inference pass) and explained.

    create.py        create_model(): any timm architecture, 1-channel input, the head replaced and checked
    device.py        where and in what precision a model runs
    inference.py     Classifier + predict(): the one inference pass, for training, evaluate, predict and serve
    checkpoint.py    the checkpoint file: written atomically, read with weights_only=True
    decision.py      logits -> probabilities (temperature) -> calls (thresholds), as chosen on validation
    loading.py       load_model(): a checkpoint, a .onnx or an hf folder -> LoadedModel, the one loader
    fields.py        what a model carries besides its weights, as the JSON block inside exported files
    onnx_runtime.py  an ONNX graph behind the Classifier interface
    hf_folder.py     a timm / Hugging Face folder read back
    cam.py           HiResCAM heatmaps and overlays
"""
