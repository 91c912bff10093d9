// How this script says what went wrong: a command's last lines, and the one message it stops with.

export function lastLines(text, count) {
  return text.split('\n').filter(Boolean).slice(-count).join('\n');
}

export function die(message) {
  console.error(message);
  process.exit(1);
}
