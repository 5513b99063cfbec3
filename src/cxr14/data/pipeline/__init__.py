"""From a table of films to batches on the device.

    cache.py       `cxr14 prepare`: every image decoded once, resized, in one memory-mapped file
    dataset.py     the torch Dataset of uint8 films (from the cache or the image files)
    loaders.py     config -> metadata -> patient-wise splits -> image sources -> DataLoaders
    sampler.py     the epoch order (seeded, sharded under torchrun, weighted by source when datasets are mixed)
    transforms.py  batched augmentation and normalisation on the device
"""
