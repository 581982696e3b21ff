"""Imported at start-up by every Ray worker of ray_llm.RUNTIME_ENV (this folder is its PYTHONPATH): bridges what
Ray 2.60's ray.data.llm expects of vLLM and vLLM 0.32 moved.

Ray's image-preparation stage imports `parse_chat_messages_async` from `vllm.entrypoints.chat_utils`; vLLM 0.32
moved that module to `vllm.renderers.chat_utils` (same function, same signature). The old name resolves to the new
module, imported only when asked for. (Ray's `worker_process_setup_hook` would be the tidier place, but Ray honours
it only in the job-level runtime env, not in an actor's.)
"""
import importlib
import importlib.abc
import importlib.util
import sys

OLD, NEW = "vllm.entrypoints.chat_utils", "vllm.renderers.chat_utils"


class _MovedModule(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        return importlib.util.spec_from_loader(name, self) if name == OLD else None

    def create_module(self, spec):
        return importlib.import_module(NEW)

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _MovedModule())
