"""Getting NIH ChestX-ray14 onto a disk, and checking a data folder before training.

    download.py   `cxr14 download`: the metadata from the package, the 12 archives resumed, verified, unpacked
    fetch.py      one HTTP download with Range resume and retries
    archives.py   NIH's archive table (URLs, MD5s, which images each holds)
    extract.py    safe unpacking (only images/NAME members)
    net.py        is a host reachable (a quick answer before a long download)
    packaged.py   the metadata files shipped inside the package, checked by sha256
    check.py      `cxr14 download --check`: is a folder ready to train on (every dataset's layout)
    files/        NIH's metadata files themselves (CC0; SOURCES.md)
"""
