"""Print the project's dependencies from pyproject.toml, one a line, for the image builds (stdlib only).

--without-model-stack leaves out what only the workers import (torch and the Hugging Face libraries): the
API image's requirements.
"""

import re
import sys
import tomllib

MODEL_STACK = {"torch", "transformers", "tokenizers", "safetensors", "huggingface-hub"}


def main() -> None:
    with open("pyproject.toml", "rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    if "--without-model-stack" in sys.argv[1:]:
        dependencies = [d for d in dependencies if re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0].lower() not in MODEL_STACK]
    print("\n".join(dependencies))


if __name__ == "__main__":
    main()
