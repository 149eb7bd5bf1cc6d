/**
 * Secrets never reach logs or error messages: passwords in connection URLs and
 * bearer tokens are replaced by `***`.
 */

const urlPassword = /([a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)([^@/\s]*)@/gi
const bearer = /(bearer\s+)[A-Za-z0-9._~+/=-]+/gi
const keyValue = /((?:password|passwd|pwd|token|secret)\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&]+)/gi

/** The text with URL passwords, bearer tokens and `password=…` pairs masked. */
export const redactSecrets = (text: string): string =>
  text.replace(urlPassword, "$1***@").replace(bearer, "$1***").replace(keyValue, "$1***")
