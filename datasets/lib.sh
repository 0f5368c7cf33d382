# datasets/lib.sh: shared by datasets/*.sh (sourced). One convention across
# the repository: RT_BIN is always the trainer binary (build/ringtrain, as in
# launch/), RT_BUILD the build directory that holds it and the converters.

# rt_converter NAME [PATH]: the converter program to run: PATH when given,
# else $RT_BUILD/NAME, else NAME next to $RT_BIN, else build/NAME. Sets conv.
rt_converter() {
  local name=$1 given=${2:-}
  if [ -n "$given" ]; then
    conv=$given
  elif [ -n "${RT_BUILD:-}" ]; then
    conv=$RT_BUILD/$name
  elif [ -n "${RT_BIN:-}" ]; then
    if [ -d "$RT_BIN" ]; then
      echo "$0: RT_BIN=$RT_BIN is a directory, but RT_BIN names the trainer binary (e.g. build/ringtrain); set RT_BUILD=$RT_BIN for the build directory" >&2
      exit 2
    fi
    conv=$(dirname "$RT_BIN")/$name
  else
    conv=build/$name
  fi
  if [ ! -x "$conv" ] || [ -d "$conv" ]; then
    echo "$0: converter '$conv' not found or not executable; build it (cmake --build build), set RT_BUILD to the build directory, or pass its path" >&2
    exit 1
  fi
}
