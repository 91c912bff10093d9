/**
 * A FIFO in a ring that doubles when full: pushing, reading by offset from the front and taking
 * the front allocate nothing per item. A slot may be emptied in place (`clear`); the front is
 * taken with `shift`.
 */
export class Ring<T> {
  private slots = Array.from<T | undefined>({ length: 64 });
  private start = 0;
  /** Slots in use from the front, emptied ones included. */
  length = 0;

  push(item: T): void {
    if (this.length === this.slots.length) this.grow();
    this.slots[(this.start + this.length) & (this.slots.length - 1)] = item;
    this.length++;
  }

  /** The item `offset` slots after the front (undefined once cleared); only for `offset < length`. */
  at(offset: number): T | undefined {
    return this.slots[(this.start + offset) & (this.slots.length - 1)];
  }

  /** Empties the slot `offset` after the front; it still counts until it is shifted out. */
  clear(offset: number): void {
    this.slots[(this.start + offset) & (this.slots.length - 1)] = undefined;
  }

  /** Takes the front slot out; only while `length > 0`. */
  shift(): T | undefined {
    const item = this.slots[this.start];
    this.slots[this.start] = undefined;
    this.start = (this.start + 1) & (this.slots.length - 1);
    this.length--;
    return item;
  }

  /** Doubles the slots, the items moved to the front in order. */
  private grow(): void {
    const slots = Array.from<T | undefined>({ length: this.slots.length * 2 });
    for (let offset = 0; offset < this.length; offset++) slots[offset] = this.at(offset);
    this.slots = slots;
    this.start = 0;
  }
}
