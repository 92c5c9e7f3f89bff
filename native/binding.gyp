{
  # vrift_native: the N-API addon (node-addon-api, C++17, exceptions on).
  # Built by scripts/build.mjs -> native/build/Release/vrift_native.node.
  'targets': [
    {
      # The official BLAKE3 C code (third_party/blake3/README.md), with its
      # SIMD back ends: the unix assembly on x86-64 (runtime dispatch picks
      # SSE2 … AVX-512), NEON on arm64, portable C elsewhere.
      # blake3.c is compiled through src/blake3_tree.c (which includes it).
      'target_name': 'blake3',
      'type': 'static_library',
      'sources': ['src/blake3_tree.c', 'third_party/blake3/blake3_dispatch.c', 'third_party/blake3/blake3_portable.c'],
      'include_dirs': ['third_party/blake3'],
      'direct_dependent_settings': {'include_dirs': ['third_party/blake3']},
      'cflags': ['-O3', '-fvisibility=hidden'],
      'xcode_settings': {'GCC_SYMBOLS_PRIVATE_EXTERN': 'YES'},
      'conditions': [
        ['target_arch=="x64" and OS!="win"', {
          'sources': [
            'third_party/blake3/blake3_sse2_x86-64_unix.S',
            'third_party/blake3/blake3_sse41_x86-64_unix.S',
            'third_party/blake3/blake3_avx2_x86-64_unix.S',
            'third_party/blake3/blake3_avx512_x86-64_unix.S',
          ],
        }],
        ['target_arch=="arm64"', {
          'sources': ['third_party/blake3/blake3_neon.c'],
          'defines': ['BLAKE3_USE_NEON=1'],
        }],
        ['target_arch!="arm64" and (target_arch!="x64" or OS=="win")', {
          'defines': ['BLAKE3_NO_SSE2', 'BLAKE3_NO_SSE41', 'BLAKE3_NO_AVX2', 'BLAKE3_NO_AVX512'],
        }],
      ],
    },
    {
      'target_name': 'vrift_native',
      'dependencies': ['blake3'],
      'sources': ['src/addon.cc', 'src/vdir_writer.cc', 'src/fast_fs.cc', 'src/link_farm.cc', 'src/tree_parse.cc', 'src/tree_blobs.cc', 'src/blob_io.cc', 'src/zstd.cc', 'src/blake3_hash.cc', 'src/layout.cc', 'src/bao_napi.cc', 'src/bao_outboard.cc', 'src/bao_verify.cc', 'src/bao_stream.cc', 'src/gcm.cc', 'src/gcm_vaes.cc'],
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
