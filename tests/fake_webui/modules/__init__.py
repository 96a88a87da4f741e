"""Fake ``modules`` package of A1111 1.10.1 (see :mod:`tests.fake_webui`)."""
