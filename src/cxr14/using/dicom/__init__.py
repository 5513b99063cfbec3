"""cxr14 and a PACS: DICOM films in, DICOM results back into the same study.

    select.py    which objects are films to score (CR/DX frontal chest), and why the others are skipped
    uids.py      deterministic UIDs: a retry writes the same objects, never a second copy; our device's UID
    codes.py     the code of each finding (SNOMED CT / DCM where DICOM ships one, else cxr14's local scheme)
    sr.py        the findings as a TID 1500 Comprehensive 3D SR
    sc.py        the heatmaps over the film as RGB Secondary Captures
    gsps.py      the top finding's hottest region outlined in a Grayscale Softcopy Presentation State
    results.py   files -> the one inference path (`using.predict`) -> the result objects per film
    offline.py   `cxr14 dicom predict`: files in, result objects written to a folder
    node.py, spool.py, send.py   `cxr14 dicom listen`: a C-STORE node that scores what it receives and sends back

No import here pulls in torch or highdicom: `cxr14 --help` stays fast.
"""
