export { BlobCache, cachedModelDir, defaultCacheDir, localModelDir, repoFolderName } from './cache.js';
export { ChecksumError, DEFAULT_ENDPOINT, fetchToFile, fileMeta, HubError, listRepo, type FileMeta, type HubAuth } from './hub.js';
export { downloadRepo, selectFiles, type DownloadedFile, type DownloadOptions, type DownloadResult } from './repo.js';
