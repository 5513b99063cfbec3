"""Films to 8-bit grey: decoding dataset images and users' films (PNG, JPEG, DICOM), and the cheap checks of a film.

    pixels.py       any PIL mode to 8-bit grey, the linear stretch, the one resize
    dicom.py        DICOM: modality LUT, VOI window, MONOCHROME1, compressed transfer syntaxes
    decode.py       a dataset image (PNG, JPEG or DICOM) to a uint8 array, resized: training, the cache, checks
    upload.py       a user's film from a path or bytes, decided by content, with one-line refusals
    orientation.py  a small network that names films turned by 90 or 180 degrees
"""
