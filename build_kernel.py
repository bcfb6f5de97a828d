#!/usr/bin/env python3
"""Bundle ecgdigit into one self-contained Kaggle inference notebook under kernels/<slug>/.

Not built yet: the Kaggle packaging issue implements it (an offline notebook that inlines the
ecgdigit sources, its kernel-metadata.json, and the weights dataset under datasets_meta/).
It needs the end-to-end `ecgdigit submit` path first.
"""
import sys


def main() -> int:
    print("build_kernel.py: not built yet - the Kaggle packaging issue implements it "
          "(it needs `ecgdigit submit`, from the end-to-end issue).", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
