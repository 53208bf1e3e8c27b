/* Private: the pieces of JSON string text both readers decode the same way (the proto3 codec in
 * schema/json_read.c and the adapters' reader in core/json_reader.c). */
#ifndef CX_CORE_JSON_TEXT_H
#define CX_CORE_JSON_TEXT_H

/* The byte a one-character escape stands for ("\n" -> '\n'), or -1 for 'u' and anything that
 * is not a JSON escape. */
static inline int cx__json_escape_byte(unsigned e)
{
    switch (e) {
    case '"':
    case '\\':
    case '/':
        return (int)e;
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    default:
        return -1;
    }
}

/* The four hex digits at p (either case) as a number in *out: 0, or -1 on a non-digit. */
static inline int cx__json_hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c - '0' < 10)
            d = c - '0';
        else if ((c | 0x20) - 'a' < 6)
            d = (c | 0x20) - 'a' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

/* Writes code point cp (at most U+10FFFF) as UTF-8 at o; returns the byte after it. */
static inline unsigned char *cx__json_put_utf8(unsigned char *o, unsigned cp)
{
    if (cp < 0x80) {
        *o++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *o++ = (unsigned char)(0xC0 | cp >> 6);
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (unsigned char)(0xE0 | cp >> 12);
        *o++ = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (unsigned char)(0xF0 | cp >> 18);
        *o++ = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        *o++ = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    return o;
}

#endif
