"""The bundled benchmark: MultiExpan (modes 0-4), ProbExpan expansion, reference-exact metrics, baselines.

Everything here consumes only a directory in the MESED layout (see MULTIEXPAN.md section 1), so it
scores our exports and the original MESED release alike. torch is imported only by the modules that
need it (features, model, losses, train, expand, baselines); loader and metrics are pure Python.
"""
