"""A small fake of the AUTOMATIC1111 WebUI 1.10.1 host for tests (``modules.*``).

Only the names and signatures the extension uses are reproduced; each file under ``modules/`` says
which A1111 file it mirrors. :func:`tests.fake_webui.host.install` puts the fake into ``sys.modules``
under the real names (``modules``, ``modules.shared``, ...) through pytest's ``monkeypatch``, so it
is removed again after each test. ``scripts/xyz_grid.py`` mirrors A1111's built-in X/Y/Z plot script;
:func:`tests.fake_webui.host.install_xyz_grid` loads it and lists it in ``modules.scripts.scripts_data``.
"""
