"""An example of a user's own pipeline for loaderbench: a Dataset class over files of packed
JPEGs (``data.PackedJpegs``), a model (``models.Net``) and the script that writes the files
(``make_data``). Nothing here is part of loaderbench: it is what your project looks like, with
your config options in ``conf/`` beside your package (see ../README.md)."""
