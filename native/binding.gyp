{
  # vrift_native: the N-API addon (node-addon-api, C++17, exceptions on).
  # Built by scripts/build.mjs -> native/build/Release/vrift_native.node.
  'targets': [
    {
      'target_name': 'vrift_native',
      'sources': ['src/addon.cc', 'src/vdir_writer.cc', 'src/fast_fs.cc', 'src/blob_io.cc', 'src/zstd.cc'],
      'libraries': ['-ldl'],
      # Headers only (no gyp dependency on node-addon-api's targets: with a
      # symlinked node_modules that drops stamp files outside build/).
      'include_dirs': ["<!(node -p \"require('node-addon-api').include_dir\")", '../shim'],
      'defines': ['NAPI_VERSION=8', 'NAPI_CPP_EXCEPTIONS'],
      'cflags': ['-fvisibility=hidden', '-O2', '-Wall', '-Wextra'],
      'cflags_cc': ['-std=c++17', '-fvisibility=hidden', '-fvisibility-inlines-hidden', '-O2', '-Wall', '-Wextra'],
      'cflags_cc!': ['-std=gnu++17', '-std=gnu++1y', '-fno-exceptions'],
      'cflags!': ['-fno-exceptions'],
      'xcode_settings': {
        'GCC_SYMBOLS_PRIVATE_EXTERN': 'YES',
        'CLANG_CXX_LANGUAGE_STANDARD': 'c++17',
      },
    },
  ],
}
