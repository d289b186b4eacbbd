"""Starts llama.cpp's OpenAI-compatible HTTP server (from the xllamacpp wheel) on 127.0.0.1.

usage: local_model_serve.py MODEL.gguf PORT THREADS

The model's own chat template (from the GGUF) is used; the server stops on SIGTERM or SIGINT.
"""
import signal
import sys
import time

import xllamacpp

model, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
params = xllamacpp.CommonParams()
params.model.path = model
params.n_ctx = 16384
params.n_parallel = 1
params.use_jinja = True
params.verbosity = 1
params.hostnames = ["127.0.0.1"]
params.port = port
params.cpuparams.n_threads = threads
params.cpuparams_batch.n_threads = threads
started = time.time()
server = xllamacpp.Server(params)
print(f"ready on {server.listening_address} after {time.time() - started:.1f} s", flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
