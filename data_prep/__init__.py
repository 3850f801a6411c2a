"""Writers that turn raw vision-language datasets into vlt arrow files.

Each ``write_<name>.py`` runs as ``python data_prep/write_<name>.py RAW_ROOT ARROW_DIR``
and exposes ``make_arrow(root, dataset_root, **options)``; shared pieces live in
:mod:`data_prep.common`.
"""
