#ifndef PIPELINE_CCURL_SHIM_H
#define PIPELINE_CCURL_SHIM_H
#include <curl/curl.h>

// curl_easy_setopt, curl_easy_getinfo and curl_multi_setopt are variadic: Swift cannot call them, so each argument
// type gets a typed wrapper (as swift-corelibs-foundation does).
static inline CURLcode pipeline_curl_easy_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode pipeline_curl_easy_setopt_int64(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode pipeline_curl_easy_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode pipeline_curl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode pipeline_curl_easy_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(handle, option, value);
}
typedef size_t (*pipeline_curl_data_callback)(char *buffer, size_t size, size_t count, void *context);
static inline CURLcode pipeline_curl_easy_setopt_data_callback(
    CURL *handle, CURLoption option, pipeline_curl_data_callback value) {
    return curl_easy_setopt(handle, option, value);
}
typedef int (*pipeline_curl_xferinfo_callback)(
    void *context, curl_off_t download_total, curl_off_t download_now, curl_off_t upload_total, curl_off_t upload_now);
static inline CURLcode pipeline_curl_easy_setopt_xferinfo_callback(
    CURL *handle, CURLoption option, pipeline_curl_xferinfo_callback value) {
    return curl_easy_setopt(handle, option, value);
}
typedef int (*pipeline_curl_seek_callback)(void *context, curl_off_t offset, int origin);
static inline CURLcode pipeline_curl_easy_setopt_seek_callback(
    CURL *handle, CURLoption option, pipeline_curl_seek_callback value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode pipeline_curl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode pipeline_curl_easy_getinfo_int64(CURL *handle, CURLINFO info, curl_off_t *value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode pipeline_curl_easy_getinfo_string(CURL *handle, CURLINFO info, char **value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLMcode pipeline_curl_multi_setopt_long(CURLM *handle, CURLMoption option, long value) {
    return curl_multi_setopt(handle, option, value);
}
#endif
