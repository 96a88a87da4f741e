"""Mirrors A1111 ``modules/img2img.py``: ``process_batch``, one generation per input image.

Input is a folder (searched recursively) or, as in 1.9+, a list of uploaded files; a mask folder
gives one mask for all images or the mask named like each image. PNG info, scale-by and the
output-folder file name options are left out.
"""

from __future__ import annotations

import os

from PIL import Image, ImageOps

from . import processing, shared

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")


def process_batch(p, input, output_dir, inpaint_mask_dir, args, to_scale=False, scale_by=1.0,
                  use_png_info=False, png_info_props=None, png_info_dir=None):  # fmt: skip
    processing.fix_seed(p)
    if isinstance(input, str):
        batch_images = sorted(
            os.path.join(root, name)
            for root, _, names in os.walk(input)
            for name in names
            if name.lower().endswith(EXTENSIONS)
        )
    else:
        batch_images = [os.path.abspath(x.name) for x in input]
    masks = (
        sorted(os.path.join(inpaint_mask_dir, n) for n in os.listdir(inpaint_mask_dir))
        if inpaint_mask_dir
        else []
    )
    shared.state.job_count = len(batch_images) * p.n_iter
    results = None
    for image_path in batch_images:
        if shared.state.interrupted:
            break
        image = ImageOps.exif_transpose(Image.open(image_path))
        p.init_images = [image] * p.batch_size
        if len(masks) == 1:
            p.image_mask = Image.open(masks[0])
        elif masks:
            stem = os.path.splitext(os.path.basename(image_path))[0]
            found = [m for m in masks if os.path.splitext(os.path.basename(m))[0] == stem]
            if not found:
                continue
            p.image_mask = Image.open(found[0])
        if output_dir:
            p.outpath_samples = output_dir
        processed = processing.process_images(p)
        if results is None:
            results = processed
        else:
            results.images.extend(processed.images)
            results.infotexts.extend(processed.infotexts)
    return results
