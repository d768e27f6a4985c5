# Install the library from BUILD_DIR into a scratch prefix, then configure, build and run the
# consumer project against it (what a user's find_package(autoround) does).
set(prefix "${WORK_DIR}/prefix")
file(REMOVE_RECURSE "${WORK_DIR}")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}" RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "install failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/build" -DCMAKE_PREFIX_PATH=${prefix} RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "find_package(autoround) failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build "${WORK_DIR}/build" RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "consumer build failed")
endif()
execute_process(COMMAND "${WORK_DIR}/build/consumer" RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "consumer run failed")
endif()

# The installed program runs from the prefix (it finds its libraries there, e.g. the CUDA
# pipeline), and quantizes: --help, then a tiny run on the real model when the assets are there.
if(EXISTS "${prefix}/bin/autoround")
  execute_process(COMMAND "${prefix}/bin/autoround" --help RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(rc)
    message(FATAL_ERROR "installed autoround --help failed: ${err}")
  endif()
  if(EXISTS "${ASSETS_DIR}/smollm2-135m-6l.gguf")  # the asset cut to 6 blocks (scripts/fetch-assets.sh)
    execute_process(COMMAND "${prefix}/bin/autoround" quantize --model "${ASSETS_DIR}/smollm2-135m-6l.gguf"
                            --calibration "${ASSETS_DIR}/kjv-calib.tokens" --nsamples 2 --seqlen 32 --batch-size 2 --iters 2
                            --format auto_round --output "${WORK_DIR}/quantized"
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(rc OR NOT EXISTS "${WORK_DIR}/quantized/auto_round/model.safetensors")
      message(FATAL_ERROR "installed autoround quantize failed: ${out} ${err}")
    endif()
    message(STATUS "installed autoround quantized the asset model into ${WORK_DIR}/quantized/auto_round")
  elseif(DEFINED ENV{CI})
    message(FATAL_ERROR "assets missing in CI: ${ASSETS_DIR}")
  endif()
else()
  message(FATAL_ERROR "${prefix}/bin/autoround was not installed")
endif()
