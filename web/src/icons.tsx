// Icons as inline SVG paths (24×24), so they look the same whatever fonts are installed.

const paths = {
  play: 'M8 5.5v13a1 1 0 0 0 1.5.86l10.5-6.5a1 1 0 0 0 0-1.72L9.5 4.64A1 1 0 0 0 8 5.5z',
  pause: 'M7 5h3.5v14H7zM13.5 5H17v14h-3.5z',
  previous: 'M6 5h2v14H6zM9.5 12 19 5.5v13z',
  next: 'M16 5h2v14h-2zM14.5 12 5 5.5v13z',
  shuffle:
    'M17 4l4 3.5-4 3.5V8.5h-1.8c-1.3 0-2.3.6-3 1.7l-4.4 6.6C7 18.3 5.6 19 4 19H3v-2h1c.9 0 1.6-.4 2.1-1.1l4.4-6.6c1.1-1.7 2.8-2.6 4.7-2.6H17zM3 5h1c1.6 0 3 .7 3.8 2.1l.8 1.2-1.2 1.8-1.3-1.9C5.6 7.4 4.9 7 4 7H3zm10.9 8.8 1.2 1.8c.5.6 1.2.9 2.1.9H17V15l4 3.5-4 3.5v-1.5h-1.8c-1.6 0-3-.8-3.9-2.1l-.6-.9z',
  repeat:
    'M7 7h10V4l4 4-4 4V9H7a2 2 0 0 0-2 2v2H3v-2a4 4 0 0 1 4-4zm10 10H7v3l-4-4 4-4v3h10a2 2 0 0 0 2-2v-2h2v2a4 4 0 0 1-4 4z',
  heart:
    'M12 20.5s-7.5-4.6-9.3-9.2C1.6 8.4 3.4 5 6.8 5c2 0 3.4 1.1 4.2 2.3C11.8 6.1 13.2 5 15.2 5c3.4 0 5.2 3.4 4.1 6.3-1.8 4.6-9.3 9.2-9.3 9.2z',
  more: 'M5 10.5a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3zm7 0a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3zm7 0a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3z',
  plus: 'M11 5h2v6h6v2h-6v6h-2v-6H5v-2h6z',
  mic: 'M12 3a3 3 0 0 1 3 3v6a3 3 0 0 1-6 0V6a3 3 0 0 1 3-3zm-7 9h2a5 5 0 0 0 10 0h2a7 7 0 0 1-6 6.9V21h-2v-2.1A7 7 0 0 1 5 12z',
  queue: 'M4 6h12v2H4zm0 5h12v2H4zm0 5h8v2H4zm13-2.5V20l5-3.25z',
  bell: 'M12 3a6 6 0 0 0-6 6v3.6l-1.7 2.8a1 1 0 0 0 .9 1.6h13.6a1 1 0 0 0 .9-1.6L18 12.6V9a6 6 0 0 0-6-6zm-2.6 15.5a2.6 2.6 0 0 0 5.2 0z',
  people:
    'M9 11.5a3.75 3.75 0 1 0 0-7.5 3.75 3.75 0 0 0 0 7.5zM2 19.5c0-3 3.1-5.5 7-5.5s7 2.5 7 5.5v.5H2zm14.2-8.3a3 3 0 1 0-.6-5.9 5.7 5.7 0 0 1 0 5.8zm1.3 2.1a6.8 6.8 0 0 1 2.5 5.2V20h2v-.5c0-2.6-2-4.7-4.5-5.2z',
  check: 'M9.5 16.2 5.3 12l-1.4 1.4 5.6 5.6L20.1 8.4 18.7 7z',
  close: 'M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12 19 17.6 17.6 19 12 13.4 6.4 19 5 17.6 10.6 12 5 6.4z',
  volume:
    'M4 9h4l5-4v14l-5-4H4zm12.5-1.5a6 6 0 0 1 0 9l-1.4-1.4a4 4 0 0 0 0-6.2zM15 10.3a2 2 0 0 1 0 3.4z',
};

export type IconName = keyof typeof paths;

export function Icon({ name, filled = true }: { name: IconName; filled?: boolean }) {
  return (
    <svg class="glyph" viewBox="0 0 24 24" aria-hidden="true" focusable="false">
      <path
        d={paths[name]}
        fill={filled ? 'currentColor' : 'none'}
        stroke={filled ? 'none' : 'currentColor'}
        stroke-width={filled ? 0 : 1.8}
      />
    </svg>
  );
}
