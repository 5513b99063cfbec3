"""Using a trained model: new films scored, a local web page, files for other tools.

    predict.py   `cxr14 predict`: PNG / JPEG / DICOM films -> one row per film, heatmap overlays
    serve/       `cxr14 serve`: the web page and JSON API over predict's functions
    export/      `cxr14 export`: a timm / Hugging Face folder and an ONNX graph, each checked
"""
