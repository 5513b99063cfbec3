"""`cxr14 serve`: a trained model behind a small local web page and a JSON API.

The routes (app.py) reach the model only through `cxr14.using.predict` (`score_films`, `heatmap`), so the page
answers exactly what `cxr14 predict --json` prints. FastAPI, uvicorn and python-multipart come with the
`serve` extra; nothing here imports them until `cxr14 serve` runs, so `cxr14 --help` stays fast.
"""
