# Sourced by the CTest scripts that run reference tools from the asset step's Python environment.
# require_asset_python TEST ASSETS MODULES: sets `python` to ASSETS/pyenv/bin/python when it
# imports MODULES ("gguf, tokenizers"); otherwise says what is missing and exits 77 (skipped)
# outside CI, 1 in CI.
require_asset_python() {
  python=$2/pyenv/bin/python
  if ! "$python" -c "import $3" 2>/dev/null; then
    echo "$1: $python with $3 is missing (run scripts/fetch-assets.sh)"
    if [ -n "${CI:-}" ]; then exit 1; else exit 77; fi
  fi
}
